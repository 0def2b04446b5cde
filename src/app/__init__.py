"""The sample application whose schema kubemigrate migrates."""
