"""The long-running process: the loop, intake, the outbox sender, worker processes, health and metrics."""
