"""The notebook series: parameters, execution, source sync and stamps."""
