"""Explicit SIMD for the GEMM: an outer-product micro-kernel written as LLVM vector IR (``@intrinsic``).

Plain Numba loops leave the register tile to LLVM's guesses (an accumulator array stays in memory);
here the kernel is emitted directly as LLVM IR on ``<L x float>`` (or ``<L x double>``) vectors, still
inside the Numba stack (no C, no assembly): one loop over ``k`` whose ``MR x NV`` accumulators are SSA
values (``phi`` nodes), so the register allocator keeps them all in vector registers.

For an A panel read with strides, ``A[i, p] = a[ao + i*rsa + p*csa]`` (a row-major A in place:
``rsa = K, csa = 1``; a transposed view: ``rsa = 1, csa = M``; a packed panel: ``rsa = 1, csa = MR``),
and a packed B panel ``B~`` (``kc x NR`` with ``NR = NV*L``: ``b[bo + p*NR + j]``), :func:`make_ukernel`
builds ``ukernel(a, ao, rsa, csa, b, bo, kc, c, co, ldc, first)`` on flat arrays::

    acc[i, v] = 0                                  # MR x NV vectors of L lanes, in registers
    for p in range(kc):
        bv[v] = load_vector(b, bo + p*NR + v*L)    # NV vector loads of B~'s row p
        for i in range(MR):
            s = broadcast(a[ao + i*rsa + p*csa])   # one scalar of A to all L lanes
            acc[i, v] = fma(s, bv[v], acc[i, v])   # MR*NV fused multiply-adds per k
    C[co + i*ldc + v*L : +L] (+)= acc[i, v]        # '=' when first, else '+='

Per ``k`` that is ``MR*NV`` FMAs for ``NV`` vector loads and ``MR`` broadcasts, so the FMA units, not
the load ports, are the limit. X86 legalises the explicit 512-bit vector types to zmm registers even
where LLVM's auto-vectoriser prefers 256 bits. Under ``NUMBA_DISABLE_JIT=1`` the same contract is the
NumPy function returned by :func:`ukernel_py`.

A caveat of Numba's disk cache: it keys a cached function on its own source file only, so after
editing this file clear the cache (``NUMBA_CACHE_DIR``) of the functions that call the kernel.
"""
from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


def ukernel_py(geometry: dict):
    """The NumPy reference of :func:`make_ukernel`'s kernel (what runs without the JIT)."""
    def ukernel(a, ao, rsa, csa, b, bo, kc, c, co, ldc, first):
        mr, nv = geometry[a.dtype]
        nr = nv * 64 // a.dtype.itemsize
        at = np.lib.stride_tricks.as_strided(a[ao:], (mr, kc), (rsa * a.itemsize, csa * a.itemsize))
        tile = at @ b[bo:bo + kc * nr].reshape(kc, nr)
        for i in range(mr):
            row = c[co + i * ldc:co + i * ldc + nr]
            row[:] = tile[i] if first else row + tile[i]
    return ukernel


def make_ukernel(geometry: dict):
    """The outer-product micro-kernel of the module docstring as one ``@intrinsic`` for float32 and
    float64. ``geometry`` maps each dtype to ``(MR, NV)``; a vector is one 512-bit register (16 float32
    or 8 float64 lanes), so ``NR = NV * lanes``. The kernel picks its geometry from ``a``'s dtype."""
    geometry = {np.dtype(k): v for k, v in geometry.items()}
    if numba.config.DISABLE_JIT:
        return ukernel_py(geometry)

    @intrinsic
    def ukernel(typingctx, a, ao, rsa, csa, b, bo, kc, c, co, ldc, first):
        sig = types.void(a, types.intp, types.intp, types.intp, b, types.intp, types.intp, c, types.intp,
                         types.intp, types.boolean)
        dtype = np.dtype(a.dtype.name)
        return sig, _codegen(dtype, *geometry[dtype])

    return ukernel


def _codegen(dtype, mr: int, nv: int):
    """LLVM IR builder of the ``MR x (NV*lanes)`` kernel for ``dtype``."""
    lanes = 64 // dtype.itemsize
    nr = nv * lanes
    elem = ir.FloatType() if dtype == np.float32 else ir.DoubleType()
    vec = ir.VectorType(elem, lanes)
    vptr = vec.as_pointer()
    i64, i32 = ir.IntType(64), ir.IntType(32)
    suffix = f"v{lanes}f{dtype.itemsize * 8}"

    def const(n):
        return ir.Constant(i64, n)

    def codegen(context, builder, signature, args):
        a_arr, ao, rsa, csa, b_arr, bo, kc, c_arr, co, ldc, first = args
        data = [cgutils.create_struct_proxy(signature.args[n])(context, builder, value=v).data
                for n, v in ((0, a_arr), (4, b_arr), (7, c_arr))]
        ap = builder.gep(data[0], [ao])
        bp = builder.gep(data[1], [bo])
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vec, [vec] * 3), f"llvm.fma.{suffix}")
        undef = ir.Constant(vec, ir.Undefined)
        splat = ir.Constant(ir.VectorType(i32, lanes), [0] * lanes)

        # loop header: p and the accumulators are phi nodes (registers across iterations)
        entry = builder.basic_block
        loop = builder.append_basic_block("uk.loop")
        body = builder.append_basic_block("uk.body")
        done = builder.append_basic_block("uk.done")
        builder.branch(loop)
        builder.position_at_end(loop)
        p = builder.phi(i64, "p")
        p.add_incoming(const(0), entry)
        acc = []
        for _ in range(mr * nv):
            phi = builder.phi(vec)
            phi.add_incoming(ir.Constant(vec, [0.0] * lanes), entry)
            acc.append(phi)
        builder.cbranch(builder.icmp_signed("<", p, kc), body, done)

        # body: NV vector loads of B~, MR broadcasts of A, MR*NV FMAs
        builder.position_at_end(body)
        brow = builder.gep(bp, [builder.mul(p, const(nr))])
        bv = [builder.load(builder.bitcast(builder.gep(brow, [const(v * lanes)]), vptr), align=dtype.itemsize)
              for v in range(nv)]
        acol = builder.gep(ap, [builder.mul(p, csa)])
        new = []
        for i in range(mr):
            s = builder.load(builder.gep(acol, [builder.mul(rsa, const(i))]))
            s = builder.shuffle_vector(builder.insert_element(undef, s, ir.Constant(i32, 0)), undef, splat)
            new.extend(builder.call(fma, [s, bv[v], acc[i * nv + v]]) for v in range(nv))
        for phi, val in zip(acc, new):
            phi.add_incoming(val, body)
        p.add_incoming(builder.add(p, const(1)), body)
        builder.branch(loop)

        # exit: store (first K block) or add the tile into C
        builder.position_at_end(done)
        ptrs = [builder.bitcast(builder.gep(data[2], [builder.add(co, builder.add(builder.mul(ldc, const(i)),
                                                                                   const(v * lanes)))]), vptr)
                for i in range(mr) for v in range(nv)]
        with builder.if_else(first) as (then, other):
            with then:
                for ptr, val in zip(ptrs, acc):
                    builder.store(val, ptr, align=dtype.itemsize)
            with other:
                for ptr, val in zip(ptrs, acc):
                    builder.store(builder.fadd(builder.load(ptr, align=dtype.itemsize), val), ptr,
                                  align=dtype.itemsize)
        return context.get_dummy_value()

    return codegen


# ------------------------------------------------------------------- unchecked flat element access
def _load_py(a, i):
    return a[i]


def _store_py(a, i, v):
    a[i] = v


if numba.config.DISABLE_JIT:
    load, store = _load_py, _store_py
else:
    @intrinsic
    def load(typingctx, a, i):
        """``a[i]`` for a 1-D array and ``i >= 0``, without Numba's negative-index wrap-around (a
        ``select`` per access that keeps LLVM from vectorising the packing copies)."""
        def codegen(context, builder, signature, args):
            data = cgutils.create_struct_proxy(signature.args[0])(context, builder, value=args[0]).data
            return builder.load(builder.gep(data, [args[1]]))
        return a.dtype(a, types.intp), codegen

    @intrinsic
    def store(typingctx, a, i, v):
        """``a[i] = v`` for a 1-D array and ``i >= 0``, without the wrap-around (see :func:`load`)."""
        def codegen(context, builder, signature, args):
            data = cgutils.create_struct_proxy(signature.args[0])(context, builder, value=args[0]).data
            val = context.cast(builder, args[2], signature.args[2], signature.args[0].dtype)
            builder.store(val, builder.gep(data, [args[1]]))
            return context.get_dummy_value()
        return types.void(a, types.intp, v), codegen
