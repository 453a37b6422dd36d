"""The Canny node against kornia's ``filters.canny`` (what ComfyUI's node calls), on synthetic pictures.

The expected edge maps were recorded with kornia 0.9.0 (the one ComfyUI 0.8.0's environment has at
/tmp/comfy-venv) from exactly these pictures and stored here bit-packed; the maxima of kornia's
suppressed gradient magnitude are stored too.
"""

from __future__ import annotations

import base64
import zlib

import numpy as np
import pytest
import torch

from tiny_sd import make_ctx

from latentgraph.errors import NodeInputError
from latentgraph.nodes.control.canny import Canny, canny


def synthetic_images() -> torch.Tensor:
    """[5, 3, 48, 64] test pictures: disc, square, triangle (other colours), textured disc, soft ramp + bar."""
    h, w = 48, 64
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    disc = ((yy - 22) ** 2 + (xx - 34) ** 2 < 13.5**2).float()
    square = ((yy > 8) & (yy < 36) & (xx > 18) & (xx < 52)).float()
    tri = ((yy > 6) & (yy < 42) & ((xx - 32).abs() < (yy - 6) * 0.7)).float()
    texture = 0.5 + 0.5 * torch.sin(xx * 1.3 + yy * 0.7) * torch.cos(yy * 0.9 - xx * 0.4)
    ramp = xx / (w - 1)
    bar = ((xx > 40) & (xx < 46)).float()
    return torch.stack([
        torch.stack([disc * 0.9, disc * 0.1, 1 - disc * 0.5]),
        square.expand(3, h, w),
        torch.stack([tri * 0.3, 1 - tri, tri]),
        (0.6 * disc + 0.4 * texture).expand(3, h, w),
        (0.7 * ramp + 0.3 * bar).expand(3, h, w),
    ]).contiguous()


THRESHOLDS = [(0.4, 0.8), (0.1, 0.3), (0.05, 0.9), (0.2, 0.21)]


#: thresholds → (zlib+base64 of the packed kornia edge bits, number of edge pixels)
KORNIA_EDGES = {
    "0.4/0.8": ("eNrtkjsOgzAQRG0cIQpLcemCIkegTEmXa/gIlCk5mrtcI13qnIAss+NIoUqTDxKWlhdwdpjxYsy21r3cNE2jsJUapMKiDlLNCrj0XfKUfH+3bOYAkrLulLug9FEZvTLslF2tTE7ZW2W2iClXCMvTHvLyT8hLJ2RF0eiZNZDHI2xCWM6zgjxazSwGYRZ+Z+4l9kgvzAVqRb7D6yjmzY4eEj1letXRjOYkY5ruxpzn2/1XB3HkHC7KVr2J4wG8ahbx2NCzZ4aamSpmdKRdECHf4EtfRd3C8j7Lsy4+nv6K35YflrsxX/z0AY4bf8UHEm1DeQ==", 427),
    "0.1/0.3": ("eNrtlD9oFEEUxt/sP9bJRTd4xRYnnFfJqrBXJblrhnhLUi56SywUtgoiQUKKaDmeghCCICiksDAJ4mGaiKXNKAmmVLA4xCKdcFwjWHvOvJlVuEItRK5wuOF3dzvz5ntvvrcAf23Y3zQrRCBjyJFHMIPk4CsQDiVcDuApWvj5SUcu+RV9DPX7daNxi/OK8ws9P/QVegv9RT5jPuzhcKjqUZFzRc5gZFZNzcado7qLfIr8xm4Ym4CtbQNerOkEmqVQM9R2g8DRjD3N3NZkRFMQbvyJgeW/zPgWD/CUQ1VYGdH0Afo3BO3n2Pi7avye41ZQwTCwmfhdmGe52RNj22DdSyZmaM4KTE/FRkNuNAmjlZtempfXNPwCcEv9PPHHRTzP0q2Fi1vVgUgHh++fsgYEjXJ63Y4goG5ALUU7tWp9v0zhnRVR/xSHOkSr/j0GJI/adEPMkN7ZrxN1+y1ZO9M+Liogko/tk3sxrCRzWXn5CMLkUjK1Kfvdbc8vnZb97y4e9nZkOseuRNMyJ4suRpMyR5s+jurq/UF3+reR202uCrNeqz1RvN+JB4oPXu03FfdutGr7Kn16ObqrrsxaQxL76npHxiWlC6vIVuvDHXke+ZRkRJXz5kGG76HWbBZIfeD0s0DqBafxaEq9f6znz5bsz3LndrfH5VXQN91pVS46151Esi66hsI1vMEJEYLLpWDGqq4szDJj5xRTxppIkXoHjL9mcbr5krEX+UL6cJfxXXQYdMxl/Oc/53dwHZz2", 1221),
    "0.05/0.9": ("eNrtlDESgjAQRRPCMBSZMWUKCo9AaUnnNXIESkuOls5r2Fl7Alz+/jgjlZUjDplZnhD383/W0Zh9bXu5eZ4nYSc1SoVVHaXaDXDtu+Qp+X5u2cwBJGXTK+ug9FEZvTLUyr5RJqccrDJbxJQrhOXpAHn5JuSlE7KiaPTMWsjjETYhLOdZQR6tZhGDMAufM/cSe6QX5gK1It/hdRTLZk8PiZ4yvepoJnOWMc0PYy7L7eGrgzhxDldlp97E8QjeNIt4bOnZM0PDTBUzOtKuiJAf8K2vom5heZ/lWRcfL3/Fb8cflrszX9z/5P52PQEpXyt5", 379),
    "0.2/0.21": ("eNrtlLGO00AQhv8db6LFisSeZOlcpNjkGiuVyysn0Z1IuUJXUOYRjo5ybV0QokrBAzhcw2MECUTLI1xHWl6AsF6vQUoBFAilYJXVZ3vXM/+M/w3w10byreNY7AJLrAIfcBnooFoIh1HYDgxbUvj9pPRbfkUVQv1+33HcPl+fv9fzQ1+vt9ff13PiIzkcDm0/xn7e+qmPpok9O3Ue6+7r6es7uRFtgqSzDYZlR6k7jvKOeWc3aNmxHHZcJR1ZdNwJF/0ZAvunHH0bEgxbh7ZhfcR4DoJ/c3R+LqO/TfT7KryKNlgIHGe43sW1VXynDMcm9H0UY+Yxl45nqowaVlHTLmp18Sw98Z/p8BV40d4+/uMmTpZ2y3Zr9s/su+XnhmdaKp0VyXQNWgsi0zC2zHWjtCksZkQDpFKl7CpGRaQN+BL2/oNC8glZMSc3xm6gmJsSzwVbFA86x9k1lD/vUs5ZVBgJsE1gh+Zqmg1VRurcrCUNEpLGXGEyR72HLHAGSqVMgdeESi4q1LUupDa8ud/5BaXfzJjuBLmK2N15oVjcGL8+0cm1F6pIqjnXYlG3+S5gXxrL8hEy6c7nQjg5gjTMD8iN3Gvf4dsC04Hw/z+pz8fJF1DdFp1rvH2VZkCGlNyaMCCyjWE34ToroAulLz6mcpBC+rorsXC+bq9SN2xvkGZtR98TtR2VE7vZPuXtamk3jb8MDkMdP8Z//nN+ByGRjhM=", 1049),
}
KORNIA_MAX_MAGNITUDE = [0.736368, 2.587286, 1.033026, 1.832371]


def kornia_edges(key: str) -> torch.Tensor:
    packed, count = KORNIA_EDGES[key]
    bits = np.unpackbits(np.frombuffer(zlib.decompress(base64.b64decode(packed)), dtype=np.uint8))
    edges = torch.from_numpy(bits[: 5 * 48 * 64].astype(np.float32)).view(5, 1, 48, 64)
    assert int(edges.sum()) == count
    return edges


@pytest.mark.parametrize(("low", "high"), THRESHOLDS)
def test_edges_are_kornias_pixel_for_pixel(low, high):
    _, edges = canny(synthetic_images(), low, high)
    expected = kornia_edges(f"{low}/{high}")
    assert edges.shape == expected.shape
    assert int((edges != expected).sum()) == 0


def test_suppressed_magnitude_matches_kornias_scale():
    magnitude, _ = canny(synthetic_images(), 0.4, 0.8)
    got = magnitude[:4].amax(dim=(1, 2, 3)).tolist()
    assert got == pytest.approx(KORNIA_MAX_MAGNITUDE, abs=1e-5)
    # a unit step blurred by σ 1 peaks near 2.59 (unnormalised Sobel): why ComfyUI's 0.4/0.8 are not fractions
    assert max(got) == pytest.approx(2.587, abs=1e-3)


def test_node_outputs_white_edges_on_black_as_an_image():
    ctx, _ = make_ctx()
    image = synthetic_images()[:2].movedim(1, -1)
    (out,) = Canny().execute(ctx, image, 0.4, 0.8)
    assert out.shape == (2, 48, 64, 3) and set(out.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(out[..., 0], out[..., 2])
    # the square's outline: edges on its border rows, nothing inside or far outside
    square = out[1, ..., 0]
    assert square[20, 25:45].sum() == 0 and square[:4].sum() == 0
    assert square[8:11, 25:45].sum() >= 20
    # an alpha channel is ignored
    rgba = torch.cat([image, torch.ones_like(image[..., :1])], -1)
    assert torch.equal(Canny().execute(ctx, rgba, 0.4, 0.8)[0], out)


def test_lower_thresholds_find_fainter_edges():
    ctx, _ = make_ctx()
    faint = synthetic_images()[:1] * 0.15  # low contrast: a step of ≈ 0.1
    strict = Canny().execute(ctx, faint.movedim(1, -1), 0.4, 0.8)[0].sum()
    loose = Canny().execute(ctx, faint.movedim(1, -1), 0.05, 0.1)[0].sum()
    assert strict == 0 and loose > 50


def test_low_threshold_above_high_is_refused_by_name():
    ctx, _ = make_ctx()
    with pytest.raises(NodeInputError) as err:
        Canny().execute(ctx, synthetic_images()[:1].movedim(1, -1), 0.9, 0.2)
    assert err.value.input_name == "low_threshold"
