"""Specs: task, variant and suite YAML as strict frozen models, the submission policy, and the
catalog that resolves an id or a path to a spec."""
