"""The console as an operator sees it, in headless Chromium: login, the live tree, a crash, history, commands."""

from __future__ import annotations

import re
import threading
import time

import pytest
from _console import SKIP_REASON, TOKEN, artifact, off, sign_in, stop_all, url_of

if SKIP_REASON is not None:
    pytest.skip(SKIP_REASON, allow_module_level=True)

from playwright.sync_api import Page, expect  # noqa: E402

from mistersmith import Backoff
from mistersmith.node import Node

RED = "rgb(214, 69, 69)"
GREEN = "rgb(46, 158, 91)"


def _row(page: Page, agent_id: str):  # type: ignore[no-untyped-def]
    return page.get_by_role("listitem").filter(has=page.get_by_role("link", name=agent_id, exact=True))


def test_a_wrong_token_shows_the_login_again(page: Page, console_node: Node) -> None:
    page.goto(f"{url_of(console_node)}/ui")
    expect(page.get_by_label("API token")).to_be_visible()
    page.get_by_label("API token").fill("not-the-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert").filter(has_text="That token was refused.")).to_be_visible()
    expect(page.get_by_label("API token")).to_be_visible()
    expect(page.get_by_role("heading", name="Supervision tree")).to_be_hidden()
    artifact(page, "login-refused")
    # a cookie that no longer holds the token (it was rotated): the login again, not the console
    page.context.add_cookies([{"name": "ms_console", "value": "stale", "domain": "127.0.0.1", "path": "/ui"}])
    page.reload()
    expect(page.get_by_label("API token")).to_be_visible()
    expect(page.get_by_role("heading", name="Supervision tree")).to_be_hidden()
    sign_in(page, console_node)
    cookie = next(c for c in page.context.cookies() if c["name"] == "ms_console")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/ui"


def test_a_spawned_agent_appears_in_the_tree_within_a_second(page: Page, console_node: Node) -> None:
    assert console_node.runtime is not None
    sign_in(page, console_node)
    try:
        off(console_node.runtime.spawn, "echo", "fresh-one")
        expect(_row(page, "fresh-one")).to_be_visible(timeout=1000)
        expect(_row(page, "fresh-one")).to_contain_text("running")
        artifact(page, "tree-spawned", docs="console-tree.png")
    finally:
        stop_all(console_node, ["fresh-one"])
    expect(_row(page, "fresh-one")).to_have_count(0)


def test_a_crash_turns_red_then_green_with_one_restart_without_a_reload(page: Page, console_node: Node) -> None:
    runtime = console_node.runtime
    assert runtime is not None
    sign_in(page, console_node)
    loads: list[str] = []
    page.on("load", lambda p: loads.append(p.url))
    try:
        off(runtime.spawn, "calc", "crashy", backoff=Backoff(min_s=1.5, max_s=3.0, jitter=0.0))
        row = _row(page, "crashy")
        badge = row.locator(".badge")
        expect(badge).to_have_text("running")
        expect(badge).to_have_css("background-color", GREEN)
        expect(row).to_contain_text("restarts 0")
        crashed = threading.Thread(target=lambda: _crash(console_node, "crashy"))
        crashed.start()
        expect(badge).to_have_text(re.compile("failed|restarting"))
        expect(badge).to_have_css("background-color", RED)
        expect(row).to_contain_text("restart in")  # the backoff countdown
        artifact(page, "tree-crashed")
        crashed.join(10.0)
        expect(badge).to_have_text("running", timeout=5000)
        expect(badge).to_have_css("background-color", GREEN)
        expect(row).to_contain_text("restarts 1")
        artifact(page, "tree-recovered")
        assert loads == []
    finally:
        stop_all(console_node, ["crashy"])


def _crash(node: Node, agent_id: str) -> None:
    assert node.runtime is not None
    with pytest.raises(Exception):
        node.runtime.ask(agent_id, "crash", timeout=5.0)


def test_the_slider_shows_the_tree_as_it_was_before_the_crash(page: Page, console_node: Node) -> None:
    runtime = console_node.runtime
    assert runtime is not None
    sign_in(page, console_node)
    try:
        off(runtime.spawn, "calc", "slid", backoff=Backoff(min_s=0.2, max_s=1.0, jitter=0.0))
        restarted = runtime.subscribe(agent_id="slid", event_types=["restarted"])
        off(_crash, console_node, "slid")
        assert off(restarted.get, 10.0).event_type == "restarted"
        restarted.close()
        page.get_by_role("link", name="History").click()
        events = page.get_by_role("list", name="Events")
        failed = events.get_by_role("listitem").filter(has_text="slid").filter(
            has=page.get_by_text("failed", exact=True))
        expect(failed).to_have_count(1, timeout=5000)
        failed.get_by_role("button").click()
        why = page.get_by_role("region", name="Why did this restart?")
        expect(why).to_contain_text("boom: the console test crashed it")
        slider = page.get_by_label("Journal position")
        slider.focus()
        page.keyboard.press("ArrowLeft")  # one event earlier: just before the failure
        then = page.get_by_role("list", name="Tree as of this moment")
        before = then.get_by_role("listitem").filter(has=page.get_by_text("slid (calc) · restarts 0", exact=True))
        expect(before.last.locator(".badge").first).to_have_text("running")
        expect(events.locator('li[aria-current="true"]')).to_be_in_viewport()
        artifact(page, "history-before-crash", docs="console-history.png")
        page.keyboard.press("End")  # the head: it has restarted once by now
        expect(then.get_by_text("slid (calc) · restarts 1", exact=True)).to_be_visible()
    finally:
        stop_all(console_node, ["slid"])


def test_a_command_sent_from_the_agent_page_returns_its_result(page: Page, console_node: Node) -> None:
    runtime = console_node.runtime
    assert runtime is not None
    sign_in(page, console_node)
    try:
        off(runtime.spawn, "calc", "adder")
        _row(page, "adder").get_by_role("link", name="adder").click()
        expect(page.get_by_role("heading", name="Agent adder")).to_be_visible()
        page.get_by_label("Command", exact=True).select_option("add")
        expect(page.get_by_text("parameters: a: int, b: int")).to_be_visible()
        page.get_by_label("Payload (JSON)").fill('{"a": 2, "b": 40}')
        page.get_by_role("button", name="Send").click()
        expect(page.get_by_role("status", name="Result")).to_have_text("42")
        artifact(page, "agent-command")
        page.get_by_label("Payload (JSON)").fill("{not json")
        page.get_by_role("button", name="Send").click()
        expect(page.get_by_role("alert").filter(has_text="Payload:")).to_be_visible()
        page.get_by_role("button", name="Restart…").click()
        dialog = page.get_by_role("dialog")
        expect(dialog).to_contain_text("Restart agent adder?")
        dialog.get_by_role("button", name="Confirm").click()
        expect(page.get_by_role("status", name="Result")).to_have_text("restarted")
        expect(page.get_by_role("list", name="Recent events")).to_contain_text("restarted")
    finally:
        stop_all(console_node, ["adder"])


def test_with_a_thousand_agents_the_page_renders_within_2s_and_stays_responsive(
        page: Page, console_node: Node) -> None:
    runtime = console_node.runtime
    assert runtime is not None
    ids = [f"agent-{i:04d}" for i in range(1000)]
    try:
        off(lambda: [runtime.spawn("echo", agent_id) for agent_id in ids])
        page.context.add_cookies([{"name": "ms_console", "value": TOKEN, "domain": "127.0.0.1", "path": "/ui",
                                   "httpOnly": True, "sameSite": "Strict"}])
        started = time.perf_counter()
        page.goto(f"{url_of(console_node)}/ui")
        expect(page.get_by_text("1,000 agents")).to_be_visible(timeout=2000)
        expect(_row(page, "agent-0000")).to_be_visible(timeout=2000)
        first_render_s = time.perf_counter() - started
        assert first_render_s <= 2.0, f"first render took {first_render_s:.2f} s"
        assert page.get_by_role("listitem").count() < 100  # virtualized: only the rows in view exist
        artifact(page, "tree-1000")
        typed = time.perf_counter()
        page.get_by_label("Filter").fill("agent-0999")
        expect(_row(page, "agent-0999")).to_be_visible(timeout=1000)
        assert time.perf_counter() - typed < 1.0
        page.get_by_label("Filter").fill("")
        page.get_by_role("list", name="Supervisors and agents").focus()
        page.keyboard.press("ArrowDown")
        off(runtime.stop, "agent-0500")  # live updates keep coming in
        expect(page.get_by_text("999 agents")).to_be_visible(timeout=2000)
    finally:
        stop_all(console_node, ids)


def test_when_the_stream_drops_a_banner_shows_then_it_reconnects_and_resumes(page: Page, console_node: Node) -> None:
    runtime, http, loop = console_node.runtime, console_node.http, console_node.loop
    assert runtime is not None and http is not None and loop is not None
    sign_in(page, console_node)
    banner = page.get_by_role("alert")
    off(runtime.spawn, "echo", "before-the-drop")
    expect(_row(page, "before-the-drop")).to_be_visible()  # the stream is live

    async def drop_every_stream() -> int:  # as a restarted proxy or a lost connection would
        subs = list(http.app.events._subs)
        for sub in subs:
            sub.close()
        return len(subs)

    assert off(loop.run, drop_every_stream(), 10.0) >= 1
    expect(banner).to_contain_text("Live updates lost: reconnecting")
    artifact(page, "stream-dropped")
    expect(banner).to_contain_text("Live updates restored", timeout=10_000)  # it came back on its own
    try:
        off(runtime.spawn, "echo", "after-the-drop")
        expect(_row(page, "after-the-drop")).to_be_visible(timeout=2000)  # and live updates flow again
    finally:
        stop_all(console_node, ["before-the-drop", "after-the-drop"])
