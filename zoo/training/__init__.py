"""LightningModules and the LightningCLI shared by several papers."""
