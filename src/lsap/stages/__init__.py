"""The stage functions the CLI calls: configs and files in, a stage's outputs out."""
