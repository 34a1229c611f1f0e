"""QR codes for payment links, as PNG bytes every channel can show (segno: pure Python)."""

from __future__ import annotations

import io

import segno


def qr_png(data: str, scale: int = 6) -> bytes:
    buffer = io.BytesIO()
    segno.make(data, error="m").save(buffer, kind="png", scale=scale, border=2)
    return buffer.getvalue()
