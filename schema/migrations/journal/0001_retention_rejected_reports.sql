CREATE TABLE `rejected_reports` (
	`id` text PRIMARY KEY NOT NULL,
	`body` text NOT NULL,
	`status` integer NOT NULL,
	`error` text,
	`rejected_at` integer NOT NULL
);
--> statement-breakpoint
ALTER TABLE `steps` ADD `log_given_up` text;--> statement-breakpoint
ALTER TABLE `steps` ADD `output_dropped` integer DEFAULT 0 NOT NULL;