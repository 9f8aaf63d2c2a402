package testenv

import (
	"context"
	"database/sql"
	"net"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// MySQLDB is a database created for one test and dropped after it.
type MySQLDB struct {
	Host, User, Password, Name string
	Port                       int
}

// DSN returns a go-sql-driver DSN for the database.
func (d MySQLDB) DSN() string {
	c := mysql.NewConfig()
	c.User, c.Passwd, c.Net = d.User, d.Password, "tcp"
	c.Addr = net.JoinHostPort(d.Host, strconv.Itoa(d.Port))
	c.DBName = d.Name
	c.MultiStatements = true
	return c.FormatDSN()
}

// MySQL creates a fresh database on the stack's MariaDB/MySQL server.
func MySQL(t testing.TB) MySQLDB {
	t.Helper()
	d := MySQLDB{
		Host:     Getenv(t, "MYSQL_HOST"),
		User:     Getenv(t, "MYSQL_USER"),
		Password: os.Getenv("MYSQL_PASSWORD"),
		Name:     Name("test"),
	}
	port, err := strconv.Atoi(Getenv(t, "MYSQL_PORT"))
	if err != nil {
		t.Fatalf("MYSQL_PORT: %v", err)
	}
	d.Port = port
	admin := d
	admin.Name = ""
	db, err := sql.Open("mysql", admin.DSN())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, "CREATE DATABASE `"+d.Name+"`"); err != nil {
		db.Close()
		t.Fatalf("create test database on %s:%d: %v", d.Host, d.Port, err)
	}
	t.Cleanup(func() {
		defer db.Close()
		if _, err := db.Exec("DROP DATABASE IF EXISTS `" + d.Name + "`"); err != nil {
			t.Errorf("drop test database %s: %v", d.Name, err)
		}
	})
	return d
}

// Exec runs SQL statements (separated by semicolons) in the database.
func (d MySQLDB) Exec(t testing.TB, statements string) {
	t.Helper()
	db, err := sql.Open("mysql", d.DSN())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(statements); err != nil {
		t.Fatalf("exec sql: %v", err)
	}
}
