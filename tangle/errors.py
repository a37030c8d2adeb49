"""Errors the tangle library raises on purpose, so callers can catch one family."""

from __future__ import annotations


class TangleError(Exception):
    """Base class for every deliberate error of this package."""


class InvalidTransaction(TangleError, ValueError):
    """A transaction (or its dict form) is malformed or cannot enter the tangle."""


class DuplicateTransaction(TangleError):
    """The transaction is already in the tangle or already waiting in the pending set."""


class UnknownTransaction(TangleError, KeyError):
    """A query named a transaction id the tangle does not hold."""

    def __str__(self) -> str:  # KeyError would repr() the id; keep the message readable
        return str(self.args[0]) if self.args else "unknown transaction"
