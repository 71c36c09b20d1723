"""The evaluation flow: saliency maps -> label maps (Eq. 7) -> refined masks -> per-method IoU.

``labels`` turns maps into label maps, ``output`` holds one batch's result, ``callback`` is the
:class:`~dcsm_lightning.SaliencySegmentation` callback that runs the flow,
``method_metrics`` keeps its IoU per method and ``panels`` makes the rows of the labelled
per-image grid from a batch's output and logs the grid to TensorBoard.
"""
