-- Reference OA schema (泛微 e-cology style), as SOURCE_SYSTEMS.md fixes it.
-- Dates and times are text in Asia/Shanghai local time: that is the quirk, not a mistake.
-- The expense form table is configuration in claimsync; the reference uses form 38.
CREATE SCHEMA IF NOT EXISTS ecology;

CREATE TABLE IF NOT EXISTS ecology.hrmdepartment (
    id              integer PRIMARY KEY,
    departmentmark  varchar(60) NOT NULL UNIQUE,
    departmentname  varchar(200) NOT NULL,
    supdepid        integer NULL,
    canceled        char(1) NULL,
    modified        char(19) NOT NULL
);
CREATE INDEX IF NOT EXISTS hrmdepartment_modified_idx ON ecology.hrmdepartment (modified);

CREATE TABLE IF NOT EXISTS ecology.hrmresource (
    id              integer PRIMARY KEY,
    workcode        varchar(60) NOT NULL UNIQUE,
    lastname        varchar(200) NOT NULL,
    departmentid    integer NOT NULL,
    status          integer NOT NULL,
    email           varchar(200) NULL,
    mobile          varchar(40) NULL,
    certificatenum  varchar(40) NULL,
    lastmoddate     char(10) NOT NULL,
    lastmodtime     char(8) NOT NULL
);
CREATE INDEX IF NOT EXISTS hrmresource_lastmod_idx ON ecology.hrmresource (lastmoddate, lastmodtime);

CREATE TABLE IF NOT EXISTS ecology.workflow_requestbase (
    requestid        integer PRIMARY KEY,
    workflowid       integer NOT NULL,
    requestmark      varchar(100) NOT NULL,
    requestname      varchar(400) NOT NULL,
    creater          integer NOT NULL,
    createdate       char(10) NOT NULL,
    createtime       char(8) NOT NULL,
    currentnodetype  char(1) NOT NULL,
    status           varchar(100) NULL,
    lastoperator     integer NULL,
    lastoperatedate  char(10) NOT NULL,
    lastoperatetime  char(8) NOT NULL,
    deleted          integer NOT NULL DEFAULT 0
);
-- The OA change cursor: every workflow action moves it.
CREATE INDEX IF NOT EXISTS workflow_requestbase_lastoperate_idx
    ON ecology.workflow_requestbase (lastoperatedate, lastoperatetime);
CREATE INDEX IF NOT EXISTS workflow_requestbase_workflowid_idx ON ecology.workflow_requestbase (workflowid);

CREATE TABLE IF NOT EXISTS ecology.workflow_requestlog (
    logid        integer PRIMARY KEY,
    requestid    integer NOT NULL,
    nodeid       integer NOT NULL,
    logtype      char(1) NOT NULL,
    operator     integer NOT NULL,
    operatedate  char(10) NOT NULL,
    operatetime  char(8) NOT NULL,
    remark       text NULL
);
CREATE INDEX IF NOT EXISTS workflow_requestlog_requestid_idx ON ecology.workflow_requestlog (requestid);

CREATE TABLE IF NOT EXISTS ecology.formtable_main_38 (
    id         integer PRIMARY KEY,
    requestid  integer NOT NULL UNIQUE,
    bxdh       varchar(50) NULL,
    sqr        integer NOT NULL,
    sqbm       integer NOT NULL,
    bxje       numeric(15,2) NOT NULL,
    bz         varchar(10) NOT NULL DEFAULT 'CNY',
    fkzt       varchar(20) NULL,
    fkrq       char(10) NULL,
    pzh        varchar(50) NULL
);
CREATE INDEX IF NOT EXISTS formtable_main_38_bxdh_idx ON ecology.formtable_main_38 (bxdh);

CREATE TABLE IF NOT EXISTS ecology.formtable_main_38_dt1 (
    id      integer PRIMARY KEY,
    mainid  integer NOT NULL,
    fylx    varchar(50) NOT NULL,
    je      numeric(15,2) NOT NULL,
    fpdm    varchar(12) NULL,
    fphm    varchar(20) NULL,
    kprq    char(10) NULL,
    sm      varchar(400) NULL
);
CREATE INDEX IF NOT EXISTS formtable_main_38_dt1_mainid_idx ON ecology.formtable_main_38_dt1 (mainid);
