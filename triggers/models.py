"""The trigger engine's rows (DESIGN.md, layer 5). The usage rollups that began here live in usage/."""
