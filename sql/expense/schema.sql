-- Reference expense schema (合思 style), as SOURCE_SYSTEMS.md fixes it.
-- update_time changes on every edit and every state change: the expense change cursor.
CREATE SCHEMA IF NOT EXISTS ekb;

CREATE TABLE IF NOT EXISTS ekb.department (
    id           varchar(32) PRIMARY KEY,
    code         varchar(60) NOT NULL UNIQUE,
    name         varchar(200) NOT NULL,
    parent_id    varchar(32) NULL,
    active       boolean NOT NULL DEFAULT true,
    update_time  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS department_update_time_idx ON ekb.department (update_time);

CREATE TABLE IF NOT EXISTS ekb.staff (
    id             varchar(32) PRIMARY KEY,
    code           varchar(60) NOT NULL UNIQUE,
    name           varchar(200) NOT NULL,
    department_id  varchar(32) NULL,
    email          varchar(200) NULL,
    cellphone      varchar(40) NULL,
    active         boolean NOT NULL DEFAULT true,
    update_time    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS staff_update_time_idx ON ekb.staff (update_time);

CREATE TABLE IF NOT EXISTS ekb.flow (
    id             varchar(32) PRIMARY KEY,
    code           varchar(40) NOT NULL UNIQUE,
    form_type      varchar(20) NOT NULL DEFAULT 'expense',
    title          varchar(400) NOT NULL,
    submitter_id   varchar(32) NOT NULL,
    department_id  varchar(32) NULL,
    sum_amount     numeric(18,2) NOT NULL,
    pay_money      numeric(18,2) NOT NULL,
    currency       char(3) NOT NULL DEFAULT 'CNY',
    state          varchar(20) NOT NULL,
    oa_request_id  integer NULL UNIQUE,
    create_time    timestamptz NOT NULL,
    submit_time    timestamptz NULL,
    approve_time   timestamptz NULL,
    pay_time       timestamptz NULL,
    voucher_no     varchar(50) NULL,
    update_time    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS flow_update_time_idx ON ekb.flow (update_time);

CREATE TABLE IF NOT EXISTS ekb.flow_detail (
    id              varchar(32) PRIMARY KEY,
    flow_id         varchar(32) NOT NULL,
    seq             integer NOT NULL,
    fee_type        varchar(50) NOT NULL,
    amount          numeric(18,2) NOT NULL,
    invoice_code    varchar(12) NULL,
    invoice_number  varchar(20) NULL,
    invoice_date    date NULL,
    remark          varchar(400) NULL
);
CREATE INDEX IF NOT EXISTS flow_detail_flow_id_idx ON ekb.flow_detail (flow_id);

CREATE TABLE IF NOT EXISTS ekb.payment (
    id             varchar(32) PRIMARY KEY,
    flow_id        varchar(32) NOT NULL,
    amount         numeric(18,2) NOT NULL,
    status         varchar(20) NOT NULL,
    payee_name     varchar(200) NOT NULL,
    payee_account  varchar(40) NOT NULL,
    create_time    timestamptz NOT NULL,
    finish_time    timestamptz NULL,
    update_time    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS payment_flow_id_idx ON ekb.payment (flow_id);
CREATE INDEX IF NOT EXISTS payment_update_time_idx ON ekb.payment (update_time);

CREATE TABLE IF NOT EXISTS ekb.flow_log (
    id           bigserial PRIMARY KEY,
    flow_id      varchar(32) NOT NULL,
    action       varchar(40) NOT NULL,
    operator_id  varchar(32) NULL,
    time         timestamptz NOT NULL,
    comment      text NULL
);
CREATE INDEX IF NOT EXISTS flow_log_flow_id_idx ON ekb.flow_log (flow_id);
