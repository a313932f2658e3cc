"""kpopnews: trending K-pop stories, with the artists and what fans say, for Discord servers."""

__version__ = "0.1.0"
USER_AGENT = f"kpopnews/{__version__} (+https://github.com/kpopnews/kpopnews; K-pop news Discord bot)"
