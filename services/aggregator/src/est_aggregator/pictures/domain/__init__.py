"""Picture rules of the aggregator: pure functions from stored reports to a situational picture.

Nothing here touches a database, the bus or HTTP; every rule can be tested with plain values.

Modules: ``reports`` (stored reports, what may be stored), ``periods`` (a picture's years, history and
period ids), ``tally`` (item totals, assessment, completeness, ``PeriodTally``), ``analysis`` (the drafted
first analysis), ``picture`` (``build_picture``, ``picture_changes``), ``lineage`` (checklist versions: a
picture's items, the codes whose history an item continues), ``alerts``, ``kronoberg`` and ``errors``.

Rules in short (each function's docstring has the detail):

* A report that another stored report ``supersedes`` never counts, whatever the arrival order.
* Each counting report is its own observation, however many one reporter sends in a period.
  Per checklist item: count → total; level → max (the mean is kept beside it); boolean → number
  of reports that said yes. ``reports`` is how many reports gave the item a non-zero value; ``places`` counts
  how often each place was named with a non-zero answer (the hot spots).
* History: ``previous`` is the item's value in the previous period and ``baseline`` the mean over
  the last ``window`` (8) periods; periods without any report are missing data, not zeros. An item
  that continues earlier codes (``ChecklistItem.continues``: a rename, split or merge) counts their
  answers as its own, in its value and its history (``lineage``).
* ``trend``: ``new`` when the item is non-zero and was zero (or unseen) in all known history;
  otherwise ``up``/``down``/``flat`` against the previous period (the baseline if there is none).
* ``flag`` (one, the most serious first):
  ``high``   level ≥ 2 (återkommande), count ≥ max(3, 2 × baseline), boolean (yes answers) ≥ max(2, 2 × baseline);
  ``new``    non-zero after at least 4 known periods in the window that were all zero;
  ``rising`` above the previous period and ≥ 1.5 × baseline.
* Completeness counts reporters, not reports: expected reporters are the people with role reporter
  assigned to the area; received is the distinct reporters with at least one counting report; a
  reporter is late when all their reports for the period came after the deadline (or the intake
  marked them late); the rate is expected reporters heard from / expected. The picture's
  ``reports`` is the number of counting reports.
* The first analysis (``analysis``) states only comparisons that hold for the numbers it shows, the
  same items and numbers in Swedish and English.
* Only what can be tallied is stored (``report_faults``): as the report's checklist says, a count
  is an integer 0 … the item's ``max_count`` (10,000 per item and report unless the checklist sets
  its own), a level an integer 0–3, a yes/no
  answer a boolean (with a checklist unknown here: any of them within those bounds); an item the
  checklist does not have, more than ``MAX_ANSWERS`` answers, more than ``MAX_PLACES`` places
  or an id longer than its column refuses the whole report. A stored value outside those bounds
  (a report kept before this rule) is left out of the sums, so it can never break a picture.
"""
