"""Loads and stores at host addresses (numba intrinsics).

Guest RAM is the user's own buffer; the physical map records its host address and size,
and every access is checked against the slot bounds before it reaches these helpers.
"""
from llvmlite import ir
from numba import types
from numba.extending import intrinsic


def _make_load(bits):
    @intrinsic
    def load(typingctx, addr):
        sig = types.int64(types.int64)

        def codegen(context, builder, signature, args):
            ity = ir.IntType(bits)
            ptr = builder.inttoptr(args[0], ity.as_pointer())
            v = builder.load(ptr, align=1)
            return builder.zext(v, ir.IntType(64)) if bits < 64 else v
        return sig, codegen
    return load


def _make_store(bits):
    @intrinsic
    def store(typingctx, addr, val):
        sig = types.void(types.int64, types.int64)

        def codegen(context, builder, signature, args):
            ity = ir.IntType(bits)
            ptr = builder.inttoptr(args[0], ity.as_pointer())
            v = builder.trunc(args[1], ity) if bits < 64 else args[1]
            builder.store(v, ptr, align=1)
            return context.get_dummy_value()
        return sig, codegen
    return store


load8 = _make_load(8)
load16 = _make_load(16)
load32 = _make_load(32)
load64 = _make_load(64)
store8 = _make_store(8)
store16 = _make_store(16)
store32 = _make_store(32)
store64 = _make_store(64)
