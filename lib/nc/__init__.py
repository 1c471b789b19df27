"""The neural-collapse core: per-class accumulation, the ``stats.safetensors`` format, the
measures, their plain reference definitions and the registry that lists them."""
