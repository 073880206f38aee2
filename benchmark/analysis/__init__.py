"""The one place that knows the paper's findings and decides them.

- `reference/`: the paper's numbers and claims as data (Tables 1-4 and 6, the claims of Figures 6
  and 7, other reproductions' numbers);
- `claims`: the claims file's schema; `verdicts`: each claim judged over seeds (Welch's interval,
  from scipy); `trials`: one row per trial, with how far it got on the paper's schedule;
- `findings`: what committed runs showed, and when, for the CPU planner;
- `diagnostics`: Figure 7's layer responses and the gradient norms, measured on models.

benchmark/report/ renders what this package decides; it decides nothing itself.
"""
