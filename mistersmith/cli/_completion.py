"""``mistersmith completion bash|zsh``: a shell completion script, generated from the parser.

The commands, their options (with the choices of those that have them, and
files or directories for ``FILE``/``DIR`` values) and the choices of their
positional arguments all come from ``build_parser()``, so the script keeps up
with the command line. Load it with ``source <(mistersmith completion bash)``
(in ``~/.bashrc``), or ``mistersmith completion zsh > ~/.zfunc/_mistersmith``
with ``~/.zfunc`` on ``$fpath`` before ``compinit``.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

from ._errors import usage
from ._output import Output

__all__ = ["SHELLS", "bash_script", "run_completion", "zsh_script"]

SHELLS = ("bash", "zsh")
_WORD = re.compile(r"^[A-Za-z0-9_.:=+-]+$")  # what may appear unquoted in the generated scripts


@dataclass(frozen=True)
class _Option:
    flags: tuple[str, ...]
    help: str
    metavar: str  # "" for a flag that takes no value
    choices: tuple[str, ...]
    repeatable: bool

    @property
    def value(self) -> str:
        """What the value is: ``dir``, ``file``, ``choice``, ``any``, or ``""`` (no value)."""
        if not self.metavar:
            return ""
        if self.choices:
            return "choice"
        return {"DIR": "dir", "FILE": "file"}.get(self.metavar, "any")


@dataclass(frozen=True)
class _Positional:
    name: str
    choices: tuple[str, ...]
    optional: bool
    rest: bool  # takes every argument that follows


@dataclass(frozen=True)
class _Command:
    name: str
    help: str
    options: tuple[_Option, ...]
    positionals: tuple[_Positional, ...]


def _words(values: object) -> tuple[str, ...]:
    words = tuple(str(v) for v in values) if isinstance(values, (list, tuple, dict)) else ()
    bad = [w for w in words if not _WORD.match(w)]
    if bad:
        raise ValueError(f"cannot put {bad[0]!r} in a completion script")
    return words


def _help(action: argparse.Action) -> str:
    text = action.help if isinstance(action.help, str) and action.help != argparse.SUPPRESS else ""
    return " ".join(text.split())


def _read(parser: argparse.ArgumentParser) -> tuple[list[_Option], list[_Positional], dict[str, str]]:
    options: list[_Option] = []
    positionals: list[_Positional] = []
    commands: dict[str, str] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            commands = {c.dest: _help(c) for c in action._choices_actions}
        elif action.option_strings:
            if action.help == argparse.SUPPRESS:
                continue
            takes_value = action.nargs != 0
            metavar = str(action.metavar or action.dest.upper()) if takes_value else ""
            options.append(_Option(_words(action.option_strings), _help(action), metavar,
                                   _words(action.choices) if action.choices else (),
                                   isinstance(action, argparse._AppendAction)))
        else:
            positionals.append(_Positional(str(action.metavar or action.dest), _words(action.choices or ()),
                                           action.nargs in ("?", "*"), action.nargs == argparse.REMAINDER))
    return options, positionals, commands


def _model(parser: argparse.ArgumentParser) -> tuple[_Command, list[_Command]]:
    """The top level (its options, and the commands as its ``help``-less positionals) and each command."""
    options, _, helps = _read(parser)
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = []
    for name, sub in subparsers.choices.items():
        sub_options, sub_positionals, _ = _read(sub)
        commands.append(_Command(name, helps.get(name, ""), tuple(sub_options), tuple(sub_positionals)))
    return _Command("", "", tuple(options), ()), commands


# -- bash -----------------------------------------------------------------------------------


def _bash_value_cases(command: _Command) -> list[str]:
    cases = []
    for option in command.options:
        value = option.value
        if not value:
            continue
        if value == "choice":
            reply = f'COMPREPLY=($(compgen -W "{" ".join(option.choices)}" -- "$cur"))'
        elif value == "dir":
            reply = 'compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -d -- "$cur"))'
        elif value == "file":
            reply = 'compopt -o filenames 2>/dev/null; COMPREPLY=($(compgen -f -- "$cur"))'
        else:
            reply = "COMPREPLY=()"
        patterns = "|".join(f'"{command.name}:{flag}"' for flag in option.flags)
        cases.append(f"        {patterns}) {reply}; return ;;")
    return cases


def bash_script(parser: argparse.ArgumentParser) -> str:
    top, commands = _model(parser)
    names = [c.name for c in commands]
    top_values = [flag for o in top.options if o.value for flag in o.flags]
    lines = [
        "# bash completion for mistersmith, generated by `mistersmith completion bash`.",
        "# Load it with: source <(mistersmith completion bash)",
        "_mistersmith() {",
        '    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}" command="" i',
        "    for ((i = 1; i < COMP_CWORD; i++)); do",
        '        case "${COMP_WORDS[i]}" in',
        f'            {"|".join(names)}) command="${{COMP_WORDS[i]}}"; break ;;',
        *([f"            {'|'.join(top_values)}) ((i++)) ;;"] if top_values else []),
        "        esac",
        "    done",
        '    case "$command:$prev" in',
        *_bash_value_cases(top),
        *(case for command in commands for case in _bash_value_cases(command)),
        "    esac",
        "    local options words",
        '    case "$command" in',
        f'        "") options="{" ".join(f for o in top.options for f in o.flags)}"; words="{" ".join(names)}" ;;',
    ]
    for command in commands:
        choices = next((p.choices for p in command.positionals if p.choices), ())
        lines.append(f'        {command.name}) options="{" ".join(f for o in command.options for f in o.flags)}"; '
                     f'words="{" ".join(choices)}" ;;')
    lines += [
        "    esac",
        '    if [[ "$cur" == -* ]]; then',
        '        COMPREPLY=($(compgen -W "$options" -- "$cur"))',
        "    else",
        '        COMPREPLY=($(compgen -W "$words" -- "$cur"))',
        "    fi",
        "}",
        "complete -F _mistersmith mistersmith",
        "",
    ]
    return "\n".join(lines)


# -- zsh ------------------------------------------------------------------------------------


def _zq(text: str) -> str:
    """``text`` single-quoted for zsh."""
    return "'" + text.replace("'", "'\\''") + "'"


def _zsh_option(option: _Option) -> str:
    described = option.help.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")
    spec = f"[{described}]"
    if option.value:
        message = option.metavar.replace(":", "\\:")
        action = {"choice": f"({' '.join(option.choices)})", "dir": "_files -/", "file": "_files"}.get(
            option.value, " ")
        spec += f":{message}:{action}"
    star = "*" if option.repeatable else ""
    if len(option.flags) == 1:
        return _zq(f"{star}{option.flags[0]}{spec}")
    exclusive = "" if option.repeatable else f"({' '.join(option.flags)})"
    return f"{_zq(star + exclusive)}{{{','.join(option.flags)}}}{_zq(spec)}"


def _zsh_positional(positional: _Positional) -> str:
    name = positional.name.replace(":", "\\:")
    if positional.rest:
        return _zq(f"*::{name}:_default")
    action = f"({' '.join(positional.choices)})" if positional.choices else " "
    return _zq(f"{':' if positional.optional else ''}:{name}:{action}")


def zsh_script(parser: argparse.ArgumentParser) -> str:
    top, commands = _model(parser)
    lines = [
        "#compdef mistersmith",
        "# zsh completion for mistersmith, generated by `mistersmith completion zsh`.",
        "# Save it as _mistersmith in a directory on $fpath (before compinit), or source it after compinit.",
        "",
        "_mistersmith() {",
        '    local curcontext="$curcontext" state line',
        "    typeset -A opt_args",
        "    local -a commands",
        "    commands=(",
        *(f"        {_zq(f'{c.name}:{c.help}')}" for c in commands),
        "    )",
        "    _arguments -C \\",
        *(f"        {_zsh_option(o)} \\" for o in top.options),
        "        ':command:->command' \\",
        "        '*::argument:->argument'",
        "    case $state in",
        "        command) _describe -t commands 'mistersmith command' commands ;;",
        "        argument)",
        '            curcontext="${curcontext%:*:*}:mistersmith-$words[1]:"',
        "            case $words[1] in",
    ]
    for command in commands:
        specs = [_zsh_option(o) for o in command.options] + [_zsh_positional(p) for p in command.positionals]
        lines.append(f"                {command.name})")
        lines.append("                    _arguments \\")
        lines += [f"                        {spec} \\" for spec in specs[:-1]]
        lines.append(f"                        {specs[-1]}" if specs else "                        ''")
        lines.append("                    ;;")
    lines += [
        "            esac",
        "            ;;",
        "    esac",
        "}",
        "",
        'if [[ "${zsh_eval_context[-1]}" == loadautofunc ]]; then',
        '    _mistersmith "$@"',
        "else",
        "    compdef _mistersmith mistersmith",
        "fi",
        "",
    ]
    return "\n".join(lines)


def run_completion(args: argparse.Namespace, out: Output) -> int:
    from ._main import build_parser

    if args.shell not in SHELLS:  # argparse checks the choices; this is for a caller building args itself
        raise usage(f"completion {args.shell!r}: use one of {', '.join(SHELLS)}")
    parser = build_parser()
    script = bash_script(parser) if args.shell == "bash" else zsh_script(parser)
    out.out.write(script)
    out.out.flush()
    return 0
