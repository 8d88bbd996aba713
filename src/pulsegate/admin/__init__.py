"""The admin API served by the supervisor on ``admin.listen``."""
