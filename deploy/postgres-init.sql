-- Each service owns its database.
CREATE DATABASE intake;
CREATE DATABASE aggregator;
CREATE DATABASE notifier;
CREATE DATABASE analysis;
