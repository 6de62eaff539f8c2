"""Replaces the stock pygments hook, which bundles every lexer, formatter and style (~2 MB).

Only rich imports pygments here, to highlight code blocks in cyclopts' markdown help; slum's
help has none, so keep the plain-text and a few common lexers and rich's default style.
"""

hiddenimports = [
    "pygments.lexers.special",
    "pygments.lexers.python",
    "pygments.lexers.shell",
    "pygments.styles.default",
    "pygments.styles.monokai",
]
