"""What a run leaves on disk: per-image files (``writer``), the comparison table and charts
(``report``, ``comparison``)."""
