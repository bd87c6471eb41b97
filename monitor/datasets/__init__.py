"""Converters from the two public data sets in `data/` to contract events.

- `ibm`: the IBM accounts-receivable sample (invoices paid in full, USD).
- `online_retail`: UCI Online Retail (II), real sales and credit notes of a UK shop
  (GBP), with invented due dates and payments.

Each `events()` returns an iterator of CloudEvents dicts sorted by time, ready for
`monitor.evaluate.evaluate_lines` after `orjson.dumps`. `python -m monitor.datasets`
writes them to a JSON-lines file. What is invented, and how, is in each module's
docstring and in `data/README.md`.
"""
