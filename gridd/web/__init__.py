"""The live web view of a tangle: a feed copied off the peer's thread, a JSON API and a
page drawn with plotly.js (from the plotly PyPI package). See gridd.web.server."""
