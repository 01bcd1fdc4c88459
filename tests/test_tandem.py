"""The closed form of a tandem of FIFO servers against its recursion, step by step."""
import numpy as np
from hypothesis import given, strategies as st

from wsesim.sim.tile import tandem_exits

times = st.floats(min_value=0, max_value=1e6, allow_nan=False)


@given(st.lists(st.tuples(times, times, times), min_size=1, max_size=12), times)
def test_tandem_exits_is_the_max_plus_recursion(servers, now):
    service = np.array([s for s, _, _ in servers])
    delay = np.array([d for _, d, _ in servers])
    free = np.array([b for _, _, b in servers])
    expected, left = [], now
    for s, d, b in zip(service, delay, free):    # D_k = max(D_{k-1} + d_k, B_k) + s_k
        left = max(left + d, b) + s
        expected.append(left)
    reach = np.cumsum(service + delay)
    got = tandem_exits(free - (reach - service), reach, now)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-6)
