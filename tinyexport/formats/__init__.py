"""The contracts every artefact format keeps: the format and recipe registries and each format's I/O
names. Pure data (no torch, no runtime): imported by converters (which write these names) and by
runners (which read them), so a runtime-only install can import it."""
