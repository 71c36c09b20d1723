"""What a run leaves on disk: per-image files (``writer``), the comparison table and charts
(``report``, ``comparison``, ``charts``), the labelled per-image grid (``grid``) and the
pyplot-free figure helpers they share (``canvas``)."""
