"""Streamed answers whose generation stops when the client goes away.

:class:`EventStream` is a Starlette ``StreamingResponse`` over an async iterator of text for
one :class:`~g2c.serve.scheduler.Ticket`. However the response ends — the last chunk sent, the
client disconnected (Starlette cancels the send loop), or a send failed — the ticket is
cancelled if it is still generating, which frees its batch slot at the engine's next step.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.responses import StreamingResponse
from starlette.types import Send

from g2c.serve.scheduler import Ticket

SSE = "text/event-stream"
NDJSON = "application/x-ndjson"


class EventStream(StreamingResponse):
    """``EventStream(chunks, ticket, media_type=SSE)``: server-sent events (or NDJSON) for one
    generation; cancels ``ticket`` when the stream ends early."""

    def __init__(self, chunks: AsyncIterator[str], ticket: Ticket, media_type: str = SSE):
        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        super().__init__(chunks, media_type=media_type, headers=headers)
        self.ticket = ticket

    async def stream_response(self, send: Send) -> None:
        """Send the stream, cancelling the generation if the client goes away first."""
        try:
            await super().stream_response(send)
        finally:
            if not self.ticket.done:
                self.ticket.cancel()  # the client left: free the slot
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except BaseException:  # noqa: S110 - cancelled while closing: nothing to keep
                    pass
