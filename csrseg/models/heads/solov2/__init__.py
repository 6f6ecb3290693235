"""The SOLOv2 head: grids of dynamic kernels on the fused feature, Matrix NMS."""

from csrseg.models.heads.solov2.config import SOLOv2Config
from csrseg.models.heads.solov2.head import SOLOv2Head
from csrseg.models.heads.solov2.outputs import SOLOv2Output

__all__ = ["SOLOv2Config", "SOLOv2Head", "SOLOv2Output"]
