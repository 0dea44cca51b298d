"""The Discord bot: commands, per-user settings, per-server limits, and the executor that runs jobs."""
