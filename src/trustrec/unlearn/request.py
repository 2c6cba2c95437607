"""Compatibility re-export: :class:`ForgetRequest` lives in :mod:`trustrec.data.request`.

Kept so that ``from trustrec.unlearn.request import ForgetRequest`` (older code, saved
scripts) keeps working; new code imports it from :mod:`trustrec.data.request` or
:mod:`trustrec.data`.
"""

from trustrec.data.request import ForgetRequest

__all__ = ["ForgetRequest"]
