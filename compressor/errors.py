class ConfigError(ValueError):
    """Bad input: the message is one line that names the key or file and says what is allowed."""
