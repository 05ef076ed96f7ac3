"""Form bodies whose text fields must decode in the request's charset (UTF-8 unless the
Content-Type names another): Starlette decodes a field that does not as Latin-1, which
would turn a transcript in EUC-KR into text the models classify as if it were Korean."""

from __future__ import annotations

import codecs
from collections.abc import Callable, Coroutine
from contextlib import aclosing
from typing import Any
from urllib.parse import unquote_to_bytes

from fastapi.routing import APIRoute
from python_multipart.multipart import parse_options_header
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.formparsers import FormParser, MultiPartException, MultiPartParser
from starlette.requests import Request
from starlette.responses import Response

_MULTIPART = b"multipart/form-data"
_URLENCODED = b"application/x-www-form-urlencoded"


def _decode(raw: bytes, charset: str, field: str) -> str:
    try:
        return raw.decode(charset)
    except UnicodeDecodeError:
        raise MultiPartException(f"{field or 'a field'}: not valid {charset} text") from None


def _unescape(raw: bytearray) -> bytes:
    """A urlencoded name or value as bytes: ``+`` is a space, ``%XX`` a byte."""
    return unquote_to_bytes(bytes(raw).replace(b"+", b" "))


class _StrictMultiPartParser(MultiPartParser):
    """Starlette's multipart parser, refusing text fields that do not decode."""

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is not None:
            super().on_part_end()
            return
        text = _decode(bytes(part.data), self._charset, part.field_name)
        self.items.append((part.field_name, text))


class _StrictFormParser(FormParser):
    """Starlette's urlencoded parser; names and values are UTF-8 (the form encoding's)."""

    def on_field_end(self) -> None:
        self._current_fields += 1
        if self._current_fields > self.max_fields:
            raise MultiPartException(
                f"Too many fields. Maximum number of fields is {self.max_fields}."
            )
        name = _decode(_unescape(self._field_name), "utf-8", "")
        self._items.append((name, _decode(_unescape(self._field_value), "utf-8", name)))


class StrictFormRequest(Request):
    """A request whose `form()` refuses text that does not decode (400, which the API answers
    as 422 INVALID_INPUT) instead of guessing Latin-1."""

    def form(  # type: ignore[override]
        self,
        *,
        max_files: int | float = 1000,
        max_fields: int | float = 1000,
        max_part_size: int = 1024 * 1024,
    ) -> Coroutine[Any, Any, FormData]:
        return self._strict_form(
            max_files=max_files, max_fields=max_fields, max_part_size=max_part_size
        )

    async def _strict_form(
        self, *, max_files: int | float, max_fields: int | float, max_part_size: int
    ) -> FormData:
        if self._form is not None:
            return self._form
        content_type, params = parse_options_header(self.headers.get("Content-Type"))
        charset = params.get(b"charset")
        if charset is not None:
            try:
                codecs.lookup(charset.decode("latin-1"))
            except LookupError:
                raise HTTPException(400, "the Content-Type names an unknown charset") from None
        try:
            async with aclosing(self.stream()) as stream:
                parser: _StrictMultiPartParser | _StrictFormParser
                if content_type == _MULTIPART:
                    parser = _StrictMultiPartParser(
                        self.headers,
                        stream,
                        max_files=max_files,
                        max_fields=max_fields,
                        max_part_size=max_part_size,
                    )
                elif content_type == _URLENCODED:
                    parser = _StrictFormParser(
                        self.headers, stream, max_fields=max_fields, max_part_size=max_part_size
                    )
                else:
                    self._form = FormData()
                    return self._form
                self._form = await parser.parse()
        except MultiPartException as exc:
            raise HTTPException(400, exc.message) from None
        return self._form


class StrictFormRoute(APIRoute):
    """Routes whose handlers (and dependencies) get a `StrictFormRequest`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(StrictFormRequest(request.scope, request.receive))

        return strict
