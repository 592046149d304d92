"""What the CPU kernels need below numba's Python: an atomic counter, and arrays without
reference counting. Each one is written as the few LLVM instructions it stands for."""
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def take_next(typingctx, counter):
    """The value of ``counter[0]`` (an int64 array), incremented atomically: the number of the
    next work unit (sample, chunk) for the thread that asks."""
    def codegen(context, builder, signature, args):
        array_type = signature.args[0]
        array = context.make_array(array_type)(context, builder, args[0])
        first = cgutils.get_item_pointer(context, builder, array_type, array,
                                         [context.get_constant(types.intp, 0)])
        return builder.atomic_rmw("add", first, context.get_constant(types.int64, 1),
                                  "monotonic")
    return types.int64(counter), codegen


@intrinsic
def borrowed(typingctx, value):
    """``value`` (an array, or a record of arrays and numbers) with each array's hold on its
    owner dropped: the same data, shape and strides, but handing it to a helper, or taking a
    view of it, costs no atomic increment and decrement of a reference count (per spike, those
    were a fifth of the forward pass). Valid only while the owner lives: the kernels borrow the
    records and the thread's arrays, which the batch function holds."""
    def borrow(context, builder, ty, val):
        if isinstance(ty, types.Array):
            array = context.make_array(ty)(context, builder, value=val)
            array.meminfo = cgutils.get_null_value(array.meminfo.type)
            array.parent = cgutils.get_null_value(array.parent.type)
            return array._getvalue()
        if isinstance(ty, types.BaseTuple):
            for k, member in enumerate(ty):
                val = builder.insert_value(
                    val, borrow(context, builder, member, builder.extract_value(val, k)), k)
        return val

    def codegen(context, builder, signature, args):
        return borrow(context, builder, signature.args[0], args[0])
    return value(value), codegen
