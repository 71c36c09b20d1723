"""The evaluation flow: saliency maps -> label maps (Eq. 7) -> refined masks -> per-method IoU.

``labels`` turns maps into label maps, ``flow`` composes one batch's flow (``segment_batch``),
``output`` holds one batch's result, ``callback`` is the
:class:`~dcsm_lightning.SaliencySegmentation` callback that runs the flow (a model takes it as
its ``segmentation``), ``network`` its variant for a segmentation network
(:class:`~dcsm_lightning.NetworkSegmentation`), ``method_metrics`` keeps its IoU per method and
``panels`` makes the rows of the labelled per-image grid from a batch's output and logs the
grid to TensorBoard.
"""
