# Admin shows times to the second, with their time zone (settings.TIME_ZONE).
DATETIME_FORMAT = "Y-m-d H:i:s T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s T"
