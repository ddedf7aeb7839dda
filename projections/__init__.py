"""The read models, built from the event log by services/projector.py."""

# Their names, for a command line that must not import their SQL to offer them (each module
# says its own as NAME; the projector checks that the two agree).
READ_MODEL_NAMES = ("accounts", "transitions", "objectives", "jobs")
