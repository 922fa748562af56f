def demo_command() -> None:
    """Run the demo."""
