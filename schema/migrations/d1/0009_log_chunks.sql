CREATE TABLE `step_log_chunks` (
	`step_id` text NOT NULL,
	`offset` integer NOT NULL,
	`length` integer NOT NULL,
	`r2_key` text NOT NULL,
	PRIMARY KEY(`step_id`, `offset`)
);
