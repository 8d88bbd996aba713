"""Sans-IO HTTP/1.1 for an intermediary: parsers that take bytes and report heads and bodies,
and writers that build bytes. Nothing here touches a socket or an event loop.
"""

from pulsegate.http.head import RequestHead, ResponseHead
from pulsegate.http.request import RequestParser
from pulsegate.http.response import ResponseParser

__all__ = ["RequestHead", "RequestParser", "ResponseHead", "ResponseParser"]
