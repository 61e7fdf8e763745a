import numpy as np
import pytest

from lstmgen.model import CELL_TYPES


@pytest.fixture(params=CELL_TYPES)
def cell(request):
    return request.param


def numeric_grad(f, x, eps=1e-6):
    """Central differences of scalar f() w.r.t. every entry of array x (modified in place, restored)."""
    g = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        idx = it.multi_index
        old = x[idx]
        x[idx] = old + eps
        fp = f()
        x[idx] = old - eps
        fm = f()
        x[idx] = old
        g[idx] = (fp - fm) / (2 * eps)
    return g
