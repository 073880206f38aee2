"""What a file in suites/ may say: the training suite's schema (`spec`: Suite, Trial, and loading
with `--set` overrides), the paper's recipes as named, cited constants (`recipes`), the profile
grid (`profile_grid`), the safe YAML reader they share (`yaml_file`), and `validate` (`cli`).

Nothing is imported here: the schema needs pydantic, which `profile` and `gpu-check` must start without.
"""
