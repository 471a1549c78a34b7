"""gRPC's server-side generic types, usable as base classes.

grpc-stubs declares ``aio.ServerInterceptor`` generic over request and response, but grpc's own class
is not subscriptable at run time, so ``class X(aio.ServerInterceptor[Any, Any])`` would fail on import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from grpc import aio

if TYPE_CHECKING:
    ServerInterceptor = aio.ServerInterceptor[Any, Any]
else:
    ServerInterceptor = aio.ServerInterceptor

__all__ = ["ServerInterceptor"]
