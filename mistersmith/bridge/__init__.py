"""The NATS edge (nats-py): subjects, command routing, status events, tasks, discovery."""
