"""Keeping traffic flowing when upstreams fail and clients misbehave: active health checks,
passive outlier ejection, retry budgets, circuit breaking and rate limiting."""
