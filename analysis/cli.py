def analyze_command(campaign: str) -> None:
    """Analyse a campaign."""
