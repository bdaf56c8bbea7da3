// The PostgreSQL JDBC driver's DatabaseMetaData and ResultSetMetaData: what DBeaver, DataGrip,
// Metabase and every BI tool call first. Run by compat/clients/test_jdbc.py:
// `java -cp postgresql.jar:. Metadata URL TABLE` prints one `key=value` line per thing it saw.
import java.sql.*;
import java.util.*;

public class Metadata {
    static void print(String key, Object value) {
        System.out.println(key + "=" + value);
    }

    static List<String> column(ResultSet rs, String name) throws SQLException {
        List<String> out = new ArrayList<>();
        while (rs.next()) out.add(rs.getString(name));
        rs.close();
        return out;
    }

    static long count(Statement st, String table) throws SQLException {
        try (ResultSet rs = st.executeQuery("SELECT count(*) FROM " + table)) {
            rs.next();
            return rs.getLong(1);
        }
    }

    public static void main(String[] args) throws Exception {
        String url = args[0], table = args[1];
        try (Connection conn = DriverManager.getConnection(url, "postgres", "")) {
            try (Statement st = conn.createStatement()) {
                st.execute("CREATE TABLE " + table + " (id bigint PRIMARY KEY, embedding vector(3), tag text)");
                st.execute("INSERT INTO " + table + " VALUES (1, '[1,2,3]', 'a'), (2, '[4,5,6]', 'b')");
            }
            try {
                DatabaseMetaData md = conn.getMetaData();
                print("product", md.getDatabaseProductName());
                print("tables", column(md.getTables(null, "public", table, new String[] {"TABLE"}), "TABLE_NAME"));
                print("columns", column(md.getColumns(null, "public", table, null), "COLUMN_NAME"));
                print("column_types", column(md.getColumns(null, "public", table, null), "TYPE_NAME"));
                print("primary_key", column(md.getPrimaryKeys(null, "public", table), "COLUMN_NAME"));
                print("has_vector_type", column(md.getTypeInfo(), "TYPE_NAME").contains("vector"));
                try (PreparedStatement ps = conn.prepareStatement(
                        "SELECT id, tag, embedding <-> ?::vector AS distance FROM " + table + " ORDER BY 3 LIMIT 1")) {
                    ps.setString(1, "[4,4,4]");
                    try (ResultSet rs = ps.executeQuery()) {
                        ResultSetMetaData rmd = rs.getMetaData();
                        List<String> names = new ArrayList<>();
                        for (int i = 1; i <= rmd.getColumnCount(); i++) names.add(rmd.getColumnName(i) + ":" + rmd.getColumnTypeName(i));
                        print("result_columns", names);
                        rs.next();
                        print("nearest", rs.getLong("id") + "/" + rs.getString("tag"));
                    }
                }
                // Autocommit off, as ORMs and BI tools run: ROLLBACK takes the rows back.
                conn.setAutoCommit(false);
                try (Statement st = conn.createStatement()) {
                    st.execute("INSERT INTO " + table + " VALUES (3, '[7,8,9]', 'c')");
                    print("count_in_transaction", count(st, table));
                    conn.rollback();
                    print("count_after_rollback", count(st, table));
                    st.execute("INSERT INTO " + table + " VALUES (3, '[7,8,9]', 'c')");
                    conn.commit();
                    print("count_after_commit", count(st, table));
                }
                conn.setAutoCommit(true);
            } finally {
                try (Statement st = conn.createStatement()) {
                    st.execute("DROP TABLE IF EXISTS " + table);
                }
            }
        }
    }
}
