"""The browser side of the dashboard's tests: a tab that collects console errors."""

from __future__ import annotations

from typing import Any

__all__ = ["Tab"]


class Tab:
    """One browser context (its own cookies) and page, collecting console errors."""

    def __init__(self, browser: Any, base: str) -> None:
        self.base = base
        self.context = browser.new_context(base_url=base)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))

    def close(self) -> None:
        self.context.close()
