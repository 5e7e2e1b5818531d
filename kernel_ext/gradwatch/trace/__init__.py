"""What gradwatch observes while a cell runs: it records plain events for the rules."""
