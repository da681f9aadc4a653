"""One router per resource: sql, feedback, experiments, health, admin."""
