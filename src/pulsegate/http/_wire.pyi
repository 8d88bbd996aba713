def scan_response(data: bytes, /) -> tuple[int, bytes, int, bool, bytes | None, int] | None: ...
def scan_request(
    data: bytes, /
) -> (
    tuple[bytes, bytes, int, bytes, bytes, bool, bytes | None, bytes | None, bytes | None, int | None, int]
    | None
): ...
