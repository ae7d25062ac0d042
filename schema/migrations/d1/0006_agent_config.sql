ALTER TABLE `agents` ADD `desired_config` text;--> statement-breakpoint
ALTER TABLE `agents` ADD `applied_config` text;